"""`scaivault-mcp`: ScaiVault's tools for AI agents over MCP (stdio), with safety controls that can
only narrow what the token allows."""
