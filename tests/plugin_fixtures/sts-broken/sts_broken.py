"""An STS plugin that cannot be imported: importing it raises, as a plugin with a bug would."""

raise RuntimeError("sts_broken is broken on purpose")
