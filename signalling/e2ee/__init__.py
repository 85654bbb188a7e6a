"""End-to-end encryption of media (issue #21): what clients do so that the SFU forwards what it cannot read."""
