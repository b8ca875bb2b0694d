"""Data: the plugin's torchreid datasets (CSV folders, SynthCam), their registration, the P x K samplers,
the train loader, and the checks run on a dataset before training (image integrity, CCSC pairs)."""
