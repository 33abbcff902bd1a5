"""roomwire media: the SFU (aiortc peers that forward without transcoding), bots, sources and sinks."""
