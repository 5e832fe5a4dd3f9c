"""Files: safe archives (:mod:`.archive`), model files (:mod:`.model_file`), checkpoints
(:mod:`.checkpoint`), the command line's tables (:mod:`.tables`), atomic writes (:mod:`.atomic`)."""
