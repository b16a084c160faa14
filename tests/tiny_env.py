"""The tiny ViT config the tests train for real, as a module a test can import by name.

It lives apart from `conftest.py` because `import conftest` is ambiguous once a test folder
has its own conftest (pytest loads each under the same name)."""

# A ViT small enough that a test trains it for real on a 2-core CI machine.
TINY = dict(dataset="synthetic", batch_size=16, patch_size=4, dim=32, depth=2, heads=2,
            dim_head=16, mlp_dim=64, device="cpu")
