"""Dataset recipes: VGGSound and MUSIC videos you have on disk, as an omnisep corpus.

``engine`` extracts audio and frames, writes the manifest and draws the fixed
mixture lists; ``vggsound`` and ``music`` hold what is specific to each dataset.
"""
