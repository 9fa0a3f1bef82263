"""Instruction retrieval: unseen phrasings map onto known instructions naming the same objects."""

import numpy as np
import torch

from embodia.body.skills import NOUNS
from embodia.cerebellum.instruction_retrieval import InstructionRetrieval, object_vocabulary
from embodia.cerebellum.training import TrainConfig, build_datasets
from embodia.data.reader import DatasetReader
from embodia.data.windows import WindowConfig, WindowDataset

NAMES = ["red_cube.x", "red_cube.z", "green_cube.x", "green_cube.z", "bowl.x", "drawer.handle.x"]
KNOWN = ["lift the red cube", "push the red cube to the square", "stack the red cube on the green cube",
         "stack the green cube on the red cube", "put the red cube in the bowl", "open the drawer"]


class BagOfWords:
    """Sentence = normalized sum of per-word vectors: cosine grows with shared words."""

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = []
        for t in texts:
            v = sum(np.random.default_rng(sum(map(ord, w)) * 7919 + len(w)).normal(size=64) for w in t.split())
            out.append(v / np.linalg.norm(v))
        return torch.as_tensor(np.stack(out), dtype=torch.float32)


def _retrieval() -> InstructionRetrieval:
    return InstructionRetrieval(KNOWN, object_vocabulary(NAMES, NOUNS), BagOfWords())


def test_vocabulary_comes_from_object_names_and_class_nouns():
    words = object_vocabulary(NAMES, NOUNS)
    assert words["red"] == "red" and words["block"] == "cube" and words["dish"] == "plate"
    assert words["drawer"] == "drawer" and words["handle"] == "handle"
    assert "x" not in words and "the" not in words


def test_nearest_known_instruction_with_the_same_objects_in_the_same_order():
    r = _retrieval()
    assert r("could you lift the red block") == "lift the red cube"
    # both stacks share every word but the order of the cubes decides
    assert r("rest the green block atop the red cube") == "stack the green cube on the red cube"
    assert r("rest the red block atop the green cube") == "stack the red cube on the green cube"
    assert r("get the drawer open") == "open the drawer"


def test_sentences_are_compared_with_their_object_phrases_masked():
    seen: list[str] = []
    bag = BagOfWords()

    class Spy:
        def encode(self, texts: list[str]) -> torch.Tensor:
            seen.extend(texts)
            return bag.encode(texts)

    r = InstructionRetrieval(KNOWN, object_vocabulary(NAMES, NOUNS), Spy())
    assert r.masked("Sweep the red block, then the green cube") == "sweep the object then the object"
    assert r.masked("open the drawer handle") == "open the object"
    r("sweep the red block to the square")
    assert "sweep the object to the square" in seen
    assert {r.masked(k) for k in KNOWN} <= set(seen)


def test_the_users_own_words_break_ties_between_masked_twins():
    known = ["lift the red cube", "lift the red block", "push the red cube to the square"]
    r = InstructionRetrieval(known, object_vocabulary(NAMES, NOUNS), BagOfWords())
    assert r("could you lift the red block") == "lift the red block"
    assert r("could you lift the red cube") == "lift the red cube"


def test_known_or_unmatched_instructions_pass_through():
    r = _retrieval()
    assert r("lift the red cube") == "lift the red cube"
    assert r("lift the purple cube") == "lift the purple cube"  # objects no known instruction names
    assert r("wave hello") == "wave hello"


def test_training_records_the_instructions_and_vocabulary(tiny_ds):
    from embodia.cerebellum.config import PolicyConfig
    from tests.cerebellum.test_estimator import OBJ
    from tests.cerebellum.test_policy import SMALL

    cfg = TrainConfig(data=[str(tiny_ds.root)], out="unused", policy=PolicyConfig(**(SMALL | OBJ)), val_fraction=0.34)
    build_datasets(cfg)
    assert cfg.policy.known_instructions == sorted(set(tiny_ds.tasks))
    assert cfg.policy.object_words["block"] == "cube"


def test_policy_acts_on_the_retrieved_instruction_only_at_inference(tiny_ds, hash_language):
    from tests.cerebellum.test_estimator import OBJ
    from tests.cerebellum.test_policy import _policy

    policy = _policy(tiny_ds, hash_language, **OBJ)
    policy.cfg.known_instructions = ["lift the red cube"]
    policy.cfg.object_words = object_vocabulary(NAMES, NOUNS)
    policy.cfg.instruction_retrieval = True
    policy._language = BagOfWords()
    seen = []
    policy.language.encode_tokens = lambda texts, n: seen.extend(texts) or hash_language.encode_tokens(texts, n)
    item = WindowDataset(DatasetReader(tiny_ds.root), WindowConfig(horizon=4))[0]
    batch = {k: v[None] for k, v in item.items() if torch.is_tensor(v)}
    batch["task"] = ["could you lift the red block"]
    policy.eval()
    policy._inputs(batch)
    policy.train()
    policy._inputs(batch)
    assert seen == ["lift the red cube", "could you lift the red block"]
