"""Export of a mixture: blend weights in the formats training frameworks read and a sampled training set
(ClimbMix-style), published as one versioned folder.

May import: common, io, search (mixture validation).
"""
