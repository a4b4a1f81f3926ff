"""Multi-domain model, Domain Attention and MixLoss.

Most tests run on a small private encoder (ToyEncoder below: residual conv blocks and a token
block whose branch takes extra inputs, the two kinds of adapter site in the zoo); the registered
``multidomain_*`` builders are tested on their tiny configs at the end.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg.checkpoint import load_model, save_checkpoint  # noqa: E402
from edgeseg.errors import ConfigError, InputShapeError  # noqa: E402
from edgeseg.losses import MixLoss, segmentation_cross_entropy  # noqa: E402
from edgeseg.metadata import ModelMetadata, default_classes  # noqa: E402
from edgeseg.models import SegmentationModel, create_model, list_models, tiny_config  # noqa: E402
from edgeseg.models.domain_attention import DomainAttention, DomainAttentionSite, insert_domain_attention  # noqa: E402
from edgeseg.models.multidomain import (  # noqa: E402
    MultiDomainConfig,
    MultiDomainSegmentationModel,
    build_multidomain,
    parse_domains,
)

SIZE = (64, 96)
DOMAINS = (("city", ("road", "car", "sky")), ("offroad", ("dirt", "grass", "rock", "tree", "sky")))


# --- a small private encoder following the contract in edgeseg/models/base.py --------------------
class ToyResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )

    def forward(self, x):
        return x + self.branch(x)


class ToyMixFFN(nn.Module):
    """A token branch that needs the map size, like SegFormer's Mix-FFN: (N, L, C), H, W."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, tokens, height: int, width: int):
        x = self.fc(tokens)
        n, _, c = x.shape
        x = self.dw(x.transpose(1, 2).reshape(n, c, height, width))
        return x.flatten(2).transpose(1, 2)


class ToyTokenBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ffn = ToyMixFFN(channels)

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.ffn(tokens, h, w)
        return tokens.transpose(1, 2).reshape(n, c, h, w)


class ToyEncoder(nn.Module):
    out_channels = [8, 16]
    strides = [8, 16]

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 8, stride=8)
        self.block1 = ToyResidual(8)
        self.down = nn.Conv2d(8, 16, 2, stride=2)
        self.block2 = ToyResidual(16)
        self.tokens = ToyTokenBlock(16)

    def forward(self, x):
        f8 = self.block1(self.stem(x))
        f16 = self.tokens(self.block2(self.down(f8)))
        return [f8, f16]

    def adapter_sites(self):
        return [("block1.branch", 8), ("block2.branch", 16), ("tokens.ffn", 16)]


class DeepestMapClassifier(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(16, num_classes, 1)

    def forward(self, features):
        return self.classifier(features[-1])


class ToyModel(SegmentationModel):
    size_divisor = 16

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = ToyEncoder()
        self.decoder = DeepestMapClassifier(num_classes)
        self.metadata = ModelMetadata(model="toy", classes=default_classes(num_classes), input_size=SIZE)


def toy_multidomain(*, head="conv", domains=DOMAINS, with_da=True, num_adapters=2):
    config = MultiDomainConfig(
        domains=domains, num_adapters=num_adapters, reduction=2, with_domain_attention=with_da,
        neck_channels=16, head_channels=8,
    )
    return build_multidomain("toy_multidomain", ToyModel, config, head=head).eval()


def randomize_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


# --- Domain Attention ------------------------------------------------------------------------
def test_domain_attention_matches_hand_computation():
    da = DomainAttention(2, num_adapters=2, reduction=1)  # bottleneck 2 -> 2 -> 2
    with torch.no_grad():
        da.assignment.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        da.assignment.bias.copy_(torch.tensor([0.0, 0.5]))
        for a, scale in zip(da.adapters, (1.0, -2.0)):
            a.reduce.weight.copy_(torch.eye(2))
            a.reduce.bias.copy_(torch.tensor([0.0, -1.0]))
            a.expand.weight.copy_(scale * torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
            a.expand.bias.copy_(torch.tensor([0.1, 0.0]))
    x = torch.tensor([[[[1.0, 3.0], [2.0, 2.0]], [[0.0, 4.0], [-1.0, 1.0]]]])  # (1, 2, 2, 2)
    # By hand: pooled p = (2, 1); assignment softmax(2, 1.5); hidden ReLU(p + (0, -1)) = (2, 0);
    # adapter i: scale_i * (2, 2) + (0.1, 0); attention = sigmoid(sum_i w_i * adapter_i).
    p = (2.0, 1.0)
    e0, e1 = math.exp(p[0]), math.exp(p[1] + 0.5)
    w = (e0 / (e0 + e1), e1 / (e0 + e1))
    hidden = (2.0, 0.0)
    adapters = [(s * hidden[0] + 0.1, s * (hidden[0] + hidden[1])) for s in (1.0, -2.0)]
    attention = [1 / (1 + math.exp(-(w[0] * adapters[0][c] + w[1] * adapters[1][c]))) for c in range(2)]
    expected = x * torch.tensor(attention).view(1, 2, 1, 1)
    torch.testing.assert_close(da(x), expected, atol=1e-6, rtol=0)
    # Tokens (N, L, C) pool over L: the same map as tokens gives the same result.
    tokens = x.flatten(2).transpose(1, 2)
    torch.testing.assert_close(da(tokens), expected.flatten(2).transpose(1, 2), atol=1e-6, rtol=0)


def test_assignment_weights_are_a_distribution():
    da = DomainAttention(16, num_adapters=3, reduction=4)
    pooled = da.pool(torch.randn(5, 16, 8, 8) * 3)
    w = da.assignment_weights(pooled)
    assert w.shape == (5, 3)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(5))
    attention = da.channel_attention(pooled)
    assert ((attention > 0) & (attention < 1)).all()


def test_domain_attention_refuses_wrong_inputs():
    da = DomainAttention(8, num_adapters=2)
    with pytest.raises(InputShapeError, match="built for 8 channels but got 4"):
        da(torch.randn(1, 4, 8, 8))
    with pytest.raises(InputShapeError, match=r"\(N, C, H, W\) feature maps or \(N, L, C\) tokens"):
        da(torch.randn(8, 8))
    with pytest.raises(ConfigError, match="num_adapters"):
        DomainAttention(8, num_adapters=0)


def test_domain_attention_sits_at_every_adapter_site():
    model = toy_multidomain()
    sites = ToyEncoder().adapter_sites()
    das = model.domain_attention_modules()
    assert len(das) == len(sites) == 3
    for path, channels in sites:
        site = model.encoder.get_submodule(path)
        assert isinstance(site, DomainAttentionSite)
        assert site[1].channels == channels and site[1].num_adapters == 2
    # Every DA module is on the path to every head: changing its adapters changes the output.
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        before = model.forward_all(x)
        for da in das:
            da.adapters[1].expand.bias.add_(3.0)
            after = model.forward_all(x)
            for b, a in zip(before, after):
                assert (b - a).abs().max() > 1e-4
            before = after


def test_nested_adapter_sites_are_all_wrapped():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.outer = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))

        def adapter_sites(self):
            return [("outer", 4), ("outer.1", 4)]  # an inner branch inside an outer one

    encoder = Nested()
    assert insert_domain_attention(encoder, num_adapters=2, reduction=1) == 2
    assert isinstance(encoder.outer, DomainAttentionSite)
    assert isinstance(encoder.outer[0][1], DomainAttentionSite)
    assert encoder.outer(torch.randn(1, 4, 8, 8)).shape == (1, 4, 8, 8)

    class NoSites(nn.Module):
        def adapter_sites(self):
            return []

    with pytest.raises(ConfigError, match="no residual branches.*with_domain_attention=False"):
        insert_domain_attention(NoSites(), num_adapters=1, reduction=1)


def test_without_domain_attention_keeps_the_plain_encoder():
    model = toy_multidomain(with_da=False)
    assert model.domain_attention_modules() == []
    assert set(model.encoder.state_dict()) == set(ToyEncoder().state_dict())


def test_per_domain_classes_and_metadata():
    model = toy_multidomain()
    x = torch.randn(2, 3, *SIZE)
    assert model.domains == ("city", "offroad")
    assert model(x).shape == (2, 3, *SIZE)  # None = the first domain
    assert model(x, domain="offroad").shape == (2, 5, *SIZE)
    assert [o.shape[1] for o in model.forward_all(x)] == [3, 5]
    md = model.metadata
    assert md.classes == ("road", "car", "sky") and md.model == "toy_multidomain"
    assert [(d.name, d.classes) for d in md.domains] == [(n, c) for n, c in DOMAINS]


def test_wrong_domain_lists_the_domains():
    model = toy_multidomain()
    with pytest.raises(ConfigError, match=r"unknown domain 'cityscapes'.*\['city', 'offroad'\]"):
        model(torch.randn(1, 3, *SIZE), domain="cityscapes")
    with pytest.raises(ConfigError, match="offroad"):
        model.domain_model("cityscapes")


@pytest.mark.parametrize("head", ["conv", "decoder"])
def test_domain_model_and_multi_head_model_equal_forward(head):
    model = toy_multidomain(head=head)
    randomize_bn(model)
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        all_logits = model.forward_all(x)
        multi = model.multi_head_model()(x)
        for name, logits, multi_logits in zip(model.domains, all_logits, multi):
            single = model.domain_model(name)
            assert isinstance(single, SegmentationModel)
            assert single.metadata == model.metadata.for_domain(name)
            torch.testing.assert_close(single(x), model(x, domain=name), atol=0, rtol=0)
            torch.testing.assert_close(logits, model(x, domain=name), atol=0, rtol=0)
            torch.testing.assert_close(multi_logits, logits, atol=0, rtol=0)
    # The views share weights: a change in the parent shows in the single-head model.
    single = model.domain_model("offroad")
    assert single.encoder is model.encoder and single.decoder[1] is model.heads["offroad"]


def test_torch_export_per_domain_and_multi_head():
    model = toy_multidomain()
    randomize_bn(model)
    x = torch.randn(1, 3, *SIZE)
    multi = model.multi_head_model()
    assert multi.output_names == ["logits_city", "logits_offroad"]
    exported = torch.export.export(multi, (x,)).module()
    with torch.no_grad():
        got, ref = exported(x), model.forward_all(x)
    assert isinstance(got, tuple) and len(got) == 2
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=model.export_atol, rtol=0)
    single = model.domain_model("offroad")
    exported = torch.export.export(single, (x,)).module()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), single(x), atol=model.export_atol, rtol=0)


# --- configuration ---------------------------------------------------------------------------
def test_parse_domains_accepts_json_lists_and_defaults():
    as_json = json.loads(json.dumps([[n, list(c)] for n, c in DOMAINS]))
    assert parse_domains(as_json, None) == DOMAINS
    assert parse_domains(DOMAINS, 3) == DOMAINS
    assert parse_domains([["bdd-100k", ["road"]]], None) == (("bdd-100k", ("road",)),)
    default = parse_domains(None, 4)
    assert [n for n, _ in default] == ["domain0", "domain1"]
    assert all(len(c) == 4 for _, c in default)


@pytest.mark.parametrize(
    ("domains", "num_classes", "message"),
    [
        (None, None, "give the domains"),
        ([["a", ["x"]], ["a", ["y"]]], None, "repeat"),
        ([["city scapes", ["x"]]], None, "letters, digits, '_' and '-'"),
        ([["city.fine", ["x"]]], None, "letters, digits, '_' and '-'"),
        ([["keys", ["x"]]], None, "attribute"),
        ([["a", "road"]], None, "list of class names"),
        ([["a"]], None, "pair"),
        ([["a", ["x", "y"]]], 3, "num_classes=3"),
        ([["a", ["x", "x"]]], None, "repeat"),
    ],
)
def test_bad_domains_are_refused(domains, num_classes, message):
    with pytest.raises(ConfigError, match=message):
        config = MultiDomainConfig(domains=parse_domains(domains, num_classes), num_adapters=1)
        build_multidomain("toy", ToyModel, config, head="conv")


# --- MixLoss -----------------------------------------------------------------------------------
def labels_for(logits: torch.Tensor) -> torch.Tensor:
    n, k, h, w = logits.shape
    labels = torch.randint(0, k, (n, h, w))
    labels[:, :4] = 255  # ignored rows
    return labels


def test_mixloss_is_the_sum_of_cross_entropies():
    logits = {"a": torch.randn(2, 3, 16, 16), "b": torch.randn(2, 5, 16, 16)}
    batches = {d: (z, labels_for(z)) for d, z in logits.items()}
    separate = {d: F.cross_entropy(z, y, ignore_index=255) for d, (z, y) in batches.items()}
    total, per_domain = MixLoss()(batches)
    torch.testing.assert_close(total, separate["a"] + separate["b"])
    for d in batches:
        torch.testing.assert_close(per_domain[d], separate[d])
    # A list of pairs gives the same total, keyed by position.
    listed = MixLoss()(list(batches.values()))
    torch.testing.assert_close(listed.total, total)
    assert sorted(listed.per_domain) == [0, 1]


def test_mixloss_backward_sums_every_domains_gradient_into_the_shared_encoder():
    model = toy_multidomain().train()
    x = {"city": torch.randn(2, 3, *SIZE), "offroad": torch.randn(2, 3, *SIZE)}
    with torch.no_grad():
        y = {d: labels_for(model(x[d], domain=d)) for d in model.domains}
    shared = model.encoder.stem.weight

    def grad_of(domains):
        model.zero_grad()
        total, _ = MixLoss()({d: (model(x[d], domain=d), y[d]) for d in domains})
        total.backward()
        return shared.grad.clone()

    per_domain = [grad_of([d]) for d in model.domains]
    assert all(g.abs().sum() > 0 for g in per_domain)
    torch.testing.assert_close(grad_of(model.domains), per_domain[0] + per_domain[1], rtol=1e-5, atol=1e-7)
    # Each head only gets its own domain's gradient.
    model.zero_grad()
    model(x["city"], domain="city").sum().backward()
    assert all(p.grad is None for p in model.heads["offroad"].parameters())


def test_cross_entropy_ignores_255_and_refuses_bad_labels():
    z = torch.randn(1, 3, 8, 8, requires_grad=True)
    all_ignored = torch.full((1, 8, 8), 255)
    loss = segmentation_cross_entropy(z, all_ignored)
    loss.backward()  # 0, not NaN, and still differentiable
    assert loss.item() == 0.0 and z.grad is not None
    with pytest.raises(ConfigError, match=r"values \[3, 7\] outside the 3 classes"):
        segmentation_cross_entropy(z, torch.tensor([3, 7, 0, 255]).repeat(16).view(1, 8, 8))
    with pytest.raises(InputShapeError, match=r"expected \(1, 8, 8\)"):
        segmentation_cross_entropy(z, torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(InputShapeError, match="integer"):
        segmentation_cross_entropy(z, torch.zeros(1, 8, 8))
    with pytest.raises(ConfigError, match="no domains"):
        MixLoss()({})


# --- the registered multi-domain models (tiny configs) -------------------------------------------
MULTIDOMAIN = [n for n in list_models() if n.startswith("multidomain_")]


def build_registered(name: str, **options) -> MultiDomainSegmentationModel:
    return create_model(name, domains=DOMAINS, **{**tiny_config(name), **options}).eval()


def test_every_available_encoder_has_a_multidomain_model():
    bases = {"lraspp_mobilenetv3_small", "lraspp_mobilenetv3_large", "segformer_b0", "mobileformer_lraspp_151m"}
    expected = {f"multidomain_{b}" for b in bases if b in list_models()}
    assert expected <= set(MULTIDOMAIN) and MULTIDOMAIN


@pytest.mark.parametrize("name", MULTIDOMAIN)
def test_registered_model_has_da_at_every_site_and_a_head_per_domain(name):
    model = build_registered(name, num_adapters=3)
    sites = model.encoder.adapter_sites()
    das = model.domain_attention_modules()
    assert len(das) == len(sites) > 0 and all(d.num_adapters == 3 for d in das)
    assert all(isinstance(model.encoder.get_submodule(p), DomainAttentionSite) for p, _ in sites)
    # Train mode: BN on batch statistics. Untrained eval-mode BN shrinks deep features to ~1e-6.
    model.train()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        before = model.forward_all(x)
        assert [o.shape for o in before] == [(2, 3, *SIZE), (2, 5, *SIZE)]
        for da in (das[0], das[-1]):  # the shallowest and the deepest DA both reach every head
            da.adapters[0].expand.bias.add_(3.0)
        after = model.forward_all(x)
    assert all((b - a).abs().max() > 1e-4 for b, a in zip(before, after))
    plain = build_registered(name, with_domain_attention=False)
    assert plain.domain_attention_modules() == []


@pytest.mark.parametrize("name", ["multidomain_lraspp_mobilenetv3_small", "multidomain_segformer_b0"])
def test_checkpoint_round_trip_keeps_domains(name, tmp_path):
    assert name in MULTIDOMAIN, f"{name} is not registered"
    model = build_registered(name, num_adapters=3)
    randomize_bn(model)
    path = save_checkpoint(model, tmp_path / "md.safetensors")
    loaded = load_model(path)
    assert isinstance(loaded, MultiDomainSegmentationModel)
    assert loaded.domains == ("city", "offroad") and loaded.metadata == model.metadata
    assert len(loaded.domain_attention_modules()) == len(model.domain_attention_modules())
    assert json.loads(json.dumps(loaded.build_config)) == loaded.build_config
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        for d in model.domains:
            torch.testing.assert_close(loaded(x, domain=d), model(x, domain=d), atol=0, rtol=0)


def test_segformer_export_per_domain_and_multi_head():
    name = "multidomain_segformer_b0"
    assert name in MULTIDOMAIN, f"{name} is not registered"
    model = build_registered(name)
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        ref = model.forward_all(x)
        got = torch.export.export(model.multi_head_model(), (x,)).module()(x)
        single = torch.export.export(model.domain_model("offroad"), (x,)).module()(x)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=model.export_atol, rtol=0)
    torch.testing.assert_close(single, ref[1], atol=model.export_atol, rtol=0)


def test_base_options_cannot_set_classes():
    name = MULTIDOMAIN[0]
    with pytest.raises(ConfigError, match="base_options must not set"):
        create_model(name, num_classes=3, base_options={"num_classes": 4})
