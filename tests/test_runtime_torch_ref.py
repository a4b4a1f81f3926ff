"""The PyTorch reference backend serves every head of a multi-domain checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgeseg.runtime as rt  # noqa: E402
from edgeseg.checkpoint import save_checkpoint  # noqa: E402
from edgeseg.models import create_model, tiny_config  # noqa: E402


def test_multidomain_checkpoint_has_one_reference_per_domain(tmp_path):
    name = "multidomain_lraspp_mobilenetv3_small"
    cfg = tiny_config(name)
    cfg["base_options"] = {**cfg.get("base_options", {}), "input_size": [64, 64]}
    model = create_model(
        name,
        domains=[["city", ["road", "car", "sky"]], ["trail", ["path", "grass", "rock", "sky", "tree"]]],
        **cfg,
    ).eval()
    path = save_checkpoint(model, tmp_path / "md.safetensors")
    seg = rt.load(path)
    assert seg.domains == ["city", "trail"]
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - torch.tensor(model.metadata.mean)[:, None, None]) / torch.tensor(model.metadata.std)[:, None, None]
    for domain, k in (("city", 3), ("trail", 5)):
        logits = seg.predict(image, logits=True, domain=domain)
        assert logits.shape == (64, 64, k)
        with torch.no_grad():
            expected = model(x, domain=domain)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    with pytest.raises(rt.DomainError):
        seg.predict(image)
