"""Sans-IO codecs: pure functions and value objects, no asyncio, no serial, no clock."""
