import { signIn } from "../api.js";
import { field, form, h, page } from "../dom.js";

export function render(main, _params, query) {
  const next = query.get("next");
  const user = h("input", { name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const signInForm = form(
    { class: "signin", "aria-label": "Sign in" },
    [
      field("User name", user),
      field("Password", pass),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
    ],
    async (data, status) => {
      const username = String(data.get("username") || "").trim();
      const password = String(data.get("password") || "");
      if (!username || !password) {
        status.append(h("div", { class: "error-box", role: "alert" }, "Enter your user name and password."));
        (username ? pass : user).focus();
        return;
      }
      await signIn(username, password);
      window.location.hash = next || "#/";
    },
  );
  page(
    main,
    "Sign in",
    h("p", {}, "Staff accounts only. Your role decides which pages and actions you see."),
    signInForm,
  );
  user.focus();
}
