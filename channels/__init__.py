"""briefcast's own channels: email, feed, social, web.

Each module holds one channel object (``briefcast.channel.Channel``), registered under the
entry-point group ``briefcast.channels`` in ``pyproject.toml`` exactly as a plug-in's would
be (see ``docs/channels.md``). Channels do no rendering of their own: the builders in
``briefcast.render`` do; a channel says what to build, how to preview it and how to send it.
"""
