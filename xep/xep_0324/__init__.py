"""XEP-0324 IoT Provisioning (``urn:xmpp:iot:provisioning``): model, codec and stanza names.

The thing side (asking its provisioning service, caching answers) lives in the application;
the service side in the registry component. Layout: :mod:`.model`, :mod:`.convert` (pure),
:mod:`.stanza` (slixmpp routing names).
"""
