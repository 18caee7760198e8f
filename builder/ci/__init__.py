"""ironforge in someone else's CI: the build matrix from a plan, and workflow files for GitHub Actions and GitLab CI."""
