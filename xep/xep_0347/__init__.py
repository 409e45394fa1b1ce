"""XEP-0347 IoT Discovery (``urn:xmpp:iot:discovery``): thing registry model, codec, claim URIs.

Layout: :mod:`.model` (tags, search terms, one dataclass per element), :mod:`.convert` (pure
XML <-> model), :mod:`.uri` (``iotdisco:`` claim/search URIs), :mod:`.stanza` (slixmpp names).
"""
