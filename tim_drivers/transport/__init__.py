"""Byte transports to TIMs (asyncio)."""
