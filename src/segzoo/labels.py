"""Reserved label values shared by data, losses and metrics.

``PAD_LABEL`` marks mask pixels that are not part of the image: the border a random crop adds when
it is larger than the (scaled) image. It is negative, so it can never be a class index nor collide
with a dataset's own ignore label (which are read from unsigned PNGs), and every loss and metric in
segzoo skips it whether or not the dataset has an ignore label.
"""

from __future__ import annotations

PAD_LABEL = -1
