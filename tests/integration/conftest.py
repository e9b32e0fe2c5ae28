import pytest

# the keys every summary.json has (other tools read them)
SUMMARY_KEYS = {"sync", "staleness", "workers", "iterations", "updates", "samples",
                "wall_time_s", "final_val_accuracy", "best_val_accuracy", "time_to_target_s",
                "max_staleness_observed", "max_version_lag", "throughput_samples_per_s",
                "wait_fraction"}


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for all integration tests: starting Ray costs seconds."""
    from hetsync.cluster.runtime import ray_session

    with ray_session(None, cpus=4):
        yield


@pytest.fixture
def summary_keys():
    return SUMMARY_KEYS
