"""The business rules, free of Flask: the API, the pages, provisioning and the CLI call them.

Each module is one area (organizations, accounts, operators, login, services, plans,
subscriptions, API keys, SAML setup, the SSO decision). Functions take an open database
session (the caller owns the transaction), record their changes in the audit trail, and raise
:mod:`idp.domain.errors` for what they refuse.
"""
