"""The NCAP's XMPP side: the thing's client, its chat commands and the reader."""
