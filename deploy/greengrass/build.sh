#!/bin/sh
# build.sh [OUT]: the Greengrass component's recipe and artifacts, laid out as the GDK CLI
# expects them (its custom build: `gdk component build` runs this from deploy/greengrass) and
# as `greengrass-cli deployment create --recipeDir OUT/recipes --artifactDir OUT/artifacts`
# reads them. OUT defaults to greengrass-build beside this script. The artifacts are the
# wheel of this checkout and deploy/install-venv.sh; the recipe is recipe.yaml as it is
# (`gdk component publish` fills in BUCKET_NAME, COMPONENT_NAME and COMPONENT_VERSION).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$here/greengrass-build}
python=${PYTHON:-python3}
name=com.example.EdgeApp
version=$(sed -n 's/^ComponentVersion: "\(.*\)"$/\1/p' "$here/recipe.yaml")
[ -n "$version" ] || { echo "build.sh: no ComponentVersion in recipe.yaml" >&2; exit 2; }
artifacts="$out/artifacts/$name/$version"
rm -rf "$out/recipes" "$artifacts"
mkdir -p "$out/recipes" "$artifacts"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$artifacts" "$repo"
wheel="$artifacts/edge_app-$version-py3-none-any.whl"
[ -f "$wheel" ] || { echo "build.sh: no $wheel: does pyproject.toml say version $version?" >&2; exit 2; }
cp "$repo/deploy/install-venv.sh" "$artifacts/"
# recipe.yaml by that name: `gdk component publish` reads OUT/recipes/recipe.yaml
cp "$here/recipe.yaml" "$out/recipes/recipe.yaml"
echo "build.sh: recipe in $out/recipes, artifacts in $artifacts"
