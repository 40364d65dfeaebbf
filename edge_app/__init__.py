"""edge_app: offline-first edge computer-vision appliance."""
