"""A configurable schema of custom profile attributes, and the validation of attribute values against it.

Importing the package registers its tables on identity's metadata.
"""

from services.identity.attributes import models as models
