"""Households (families of person customers) and the person contacts of organisation customers.

Importing the package registers its tables on identity's metadata.
"""

from services.identity.households import models as models
