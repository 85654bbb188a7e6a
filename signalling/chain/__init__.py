"""The chain: the embedded EVM or anvil, and the compiled Basement contracts (ABIs, bytecode, deployment)."""
