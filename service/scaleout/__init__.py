"""Segment-parallel file conversion on Ray (issue 12): optional, used only when a Ray address is configured.

``split`` probes the input and cuts it at keyframes; ``task`` is what a worker runs on one segment (the
single-process :func:`service.pipeline.convert_video`, unchanged); ``assemble`` writes the segments into one
HDR10 file with MaxCLL/MaxFALL over all of them; ``cluster`` is the Ray driver. The stream copy both ends
need (cutting, concatenating) is :mod:`service.video.remux`, as PyAV stays inside ``service.video``.
Importing this package does not import Ray.
"""
