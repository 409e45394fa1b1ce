"""A small SIP stack for the presence bridge: pure codecs, and the asyncio I/O half.

``sipstack`` never imports ``ncap``, ``xep`` or ``tim_drivers``. Modules:

* :mod:`sipstack.message`: requests and responses, datagram parsing, stream framing, responses
  made from requests;
* :mod:`sipstack.headers`: the ordered, case-insensitive header list and the low-level syntax
  helpers (lists, parameters, quoted strings);
* :mod:`sipstack.fields`: typed helpers for Via, From/To/Contact, CSeq, Event, ...;
* :mod:`sipstack.uri`: ``sip:``/``sips:`` URIs with RFC 3261 comparison;
* :mod:`sipstack.digest`: digest authentication, client and server side;
* :mod:`sipstack.pidf`: PIDF + data model + RPID presence documents;
* :mod:`sipstack.mwi`: RFC 3842 message-summary bodies;
* :mod:`sipstack.errors`: the exception family (:class:`~sipstack.errors.SipError`);
* :mod:`sipstack.transport` (I/O): UDP, TCP and TLS transports on asyncio;
* :mod:`sipstack.transaction`: the RFC 3261 §17 state machines (timers on a scheduler);
* :mod:`sipstack.ua` (I/O): the user-agent core (client requests, request handlers).
"""
