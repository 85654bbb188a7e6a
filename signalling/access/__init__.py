"""Who may enter: Sign-In with Ethereum, grants, token gates and room configuration, the admin API, rate limits."""
