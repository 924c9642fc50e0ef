"""Consents per customer × channel × purpose, their full history, and contact preferences.

Importing the package registers its tables on identity's metadata.
"""

from services.identity.consents import models as models
