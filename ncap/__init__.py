"""NCAP: an IEEE 21451 Network Capable Application Processor speaking XMPP IoT."""

__version__ = "0.1.0"
