"""The asyncio server and the domains it serves."""
