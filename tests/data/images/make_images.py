#!/usr/bin/env python3
"""Writes the committed image fixtures of tests/unit/test_data.cpp (needs Pillow; run with the
venv's python: ~/.cache/halsal/venv/bin/python tests/data/images/make_images.py).

stb_image_write cannot write progressive JPEGs, so the tests cannot make one themselves:
  progressive.jpg      40 x 24 RGB, progressive JPEG (quality 90)
  progressive_ref.png  the same image as Pillow (libjpeg) decodes it: the reference for stb's decode
and the seed inputs of the image fuzzer, tests/fuzz/corpus_image/ (tiny files of every format).
"""
import pathlib

from PIL import Image

here = pathlib.Path(__file__).resolve().parent
w, h = 40, 24
img = Image.new("RGB", (w, h))
px = img.load()
for y in range(h):
    for x in range(w):
        # Smooth gradients plus a dark square: low JPEG error, but every channel varies.
        r = 30 + 5 * x
        g = 40 + 8 * y
        b = 200 - 3 * x - 2 * y
        if 8 <= x < 16 and 6 <= y < 14:
            r, g, b = 20, 30, 40
        px[x, y] = (r, g, b)
img.save(here / "progressive.jpg", "JPEG", quality=90, progressive=True, optimize=False, subsampling=0)
Image.open(here / "progressive.jpg").convert("RGB").save(here / "progressive_ref.png")
print("wrote", here / "progressive.jpg", here / "progressive_ref.png")

corpus = here.parent.parent / "fuzz" / "corpus_image"
corpus.mkdir(parents=True, exist_ok=True)
small = img.resize((12, 8))
small.save(corpus / "rgb.png")
small.convert("L").save(corpus / "grey.png")
small.convert("RGBA").save(corpus / "rgba.png")
small.convert("LA").save(corpus / "grey_alpha.png")
small.save(corpus / "baseline.jpg", "JPEG", quality=75)
small.save(corpus / "progressive.jpg", "JPEG", quality=75, progressive=True)
small.convert("L").save(corpus / "grey.jpg", "JPEG", quality=75)
small.save(corpus / "rgb.bmp")
print("wrote", corpus)
