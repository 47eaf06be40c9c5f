"""A standalone multi-tenant SAML 2.0 Identity Provider."""
