"""Files: checkpoints and the run description they carry, safe reading, atomic writes.

``atomic`` (write-then-rename, cleanup after killed writers), ``images`` (image files as a
viewer shows them: EXIF orientation, 16-bit scaling), ``torchfile`` (verified,
weights-only reading of ``torch.save`` files), ``state_dict`` (reading state dicts, loading them
all-or-nothing), ``run_description`` (the typed description of a training run's data and
outputs), ``checkpoint`` (segzoo checkpoints: save, load, ``load_run``, ``load_weights``).

Nothing is imported here, so the models can use the low-level readers without a cycle through
``checkpoint`` (which builds models).
"""
