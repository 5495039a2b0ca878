"""Store subjects feed TorchIO's Queue and samplers, and a model trains on them."""

from __future__ import annotations

import torch
import torchio as tio

from radiobject_adapter import RadiObject, VolumeCollectionSubjectsDataset


def test_subjects_are_lazy_with_images_labelmaps_and_affines(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    subjects = VolumeCollectionSubjectsDataset([radi.CT, radi.seg], labels="diagnosis")
    assert len(subjects) == len(radi.CT)
    assert [s["subject_id"] for s in subjects.dry_iter()] == radi.CT.subject_ids  # no voxels read
    subject = subjects[0]
    assert isinstance(subject["CT"], tio.ScalarImage) and isinstance(subject["seg"], tio.LabelMap)
    assert subject["CT"].shape == (1, *radi.CT.iloc[0].shape)
    torch.testing.assert_close(torch.as_tensor(subject["CT"].affine), torch.as_tensor(radi.CT.iloc[0].affine))
    assert subject["label"] in ("tumor", "healthy")


def test_queue_with_label_sampler_trains_one_step(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    subjects = VolumeCollectionSubjectsDataset([radi.CT, radi.seg], transform=tio.RescaleIntensity(out_min_max=(0, 1)))
    queue = tio.Queue(
        subjects, max_length=8, samples_per_volume=2, sampler=tio.LabelSampler(16, label_name="seg"), num_workers=2
    )
    batch = next(iter(tio.SubjectsLoader(queue, batch_size=4)))
    assert batch["CT"][tio.DATA].shape == (4, 1, 16, 16, 16)
    assert (batch["seg"][tio.DATA] > 0).flatten(1).any(1).all()  # the label sampler centres on labels
    model = torch.nn.Conv3d(1, 3, 3, padding=1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(batch["CT"][tio.DATA]), batch["seg"][tio.DATA][:, 0].long())
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.weight)
