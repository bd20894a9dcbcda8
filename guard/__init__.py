"""sagemaker-cost-guard: stops Amazon SageMaker from quietly burning money."""

__version__ = "0.1.0"
