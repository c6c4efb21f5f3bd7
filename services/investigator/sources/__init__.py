"""Evidence sources: one module per integration, each an `EvidenceSource`.

`config.build_sources` turns `evidence.yaml` into source instances; adding an
integration means one module here, one config kind in `config.py` and one test.
"""
