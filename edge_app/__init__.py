"""edge_app: offline-first edge computer-vision appliance."""

import os as _os

# One BLAS thread, set before numpy is first imported (a later setting is ignored). The only
# BLAS work is anomaly scoring's small matrix products (3 ms on one thread), and OpenBLAS
# threads spinning beside the TFLite interpreter's threads made them 15x slower on 2 cores.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
