"""Segment-parallel file conversion on Ray (issue 12): optional, used only when a Ray address is configured.

``remux`` cuts the input at keyframes and concatenates encoded segments (stream copy only); ``task`` is what
a worker runs on one segment (the single-process :func:`service.pipeline.convert_video`, unchanged);
``assemble`` writes the segments into one HDR10 file with MaxCLL/MaxFALL over all of them; ``cluster`` is
the Ray driver. Importing this package does not import Ray.
"""
