import edgefusion


def test_all_is_sorted_and_exported():
    assert edgefusion.__all__ == sorted(edgefusion.__all__)
    for name in edgefusion.__all__:
        assert hasattr(edgefusion, name), name


def test_every_error_derives_from_the_base():
    from edgefusion import errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.EdgeFusionError), name
