"""Still images: SDR PNG/JPEG in, HDR out as OpenEXR (linear BT.2020 cd/m²) or 16-bit PQ PNG with cICP."""
