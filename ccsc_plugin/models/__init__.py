"""Models: the paper's ResNet (timm backbone, last stride 1, 512-d head) registered in torchreid's factory."""
