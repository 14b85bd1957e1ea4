"""Identity: accounts, passwords, authenticators (TOTP), badge tokens, roles and the login views."""
