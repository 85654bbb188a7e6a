"""The SIP service (issue #19, docs/sip.md): SIP phones and softphones in rooms."""
