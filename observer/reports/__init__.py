"""Reports: the envelope and types (``model``), schema-conforming payload building (``schema``), the
builders for client samples (``client``), SFU samples (``sfu``) and entity events (``events``), and
CSV encoding (``csv``)."""
