"""The application the kit deploys: Yuxi-Know, as facts (contracts) and adapters.

``PINNED_VERSION`` is the one place the deployed application version is named;
``contracts/<version>.yaml`` holds what that version reads, serves and owns.
"""

PINNED_VERSION = "0.6.1"
