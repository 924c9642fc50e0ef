"""Free-form notes on a customer, by the staff who deal with them.

Importing the package registers its tables on identity's metadata.
"""

from services.identity.notes import models as models
