"""Package data (weights): not code; shipped with the package (setup.cfg [options.package_data])."""
