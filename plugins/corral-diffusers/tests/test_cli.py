"""The command line: import with a template and components, capability tags set and edited, `corral
imagine` writing PNGs (text-to-image, image-to-image, with LoRAs), and one-line errors."""

from __future__ import annotations

import json

from PIL import Image


def _import(run, *args):
    result = run("import", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["model"]


def test_import_with_template_and_imagine_writes_a_png(run, flux, tmp_path):
    p = flux.parts
    model = _import(run, p["transformer"], "--template", "flux", "--vae", p["vae"], "--clip-l", p["clip_l"],
                    "--t5xxl", p["t5xxl"], "--name", "tiny-flux")
    assert model["tags"] == ["text-to-image", "image-to-image"]
    assert {c["kind"] for c in model["components"]} == {"vae", "clip-l", "t5xxl"}
    assert run("settings", "tiny-flux", "--set", f"config={flux.config}").exit_code == 0
    shown = run("show", "tiny-flux")
    assert "template" in shown.stdout and "flux" in shown.stdout
    out = tmp_path / "out.png"
    result = run("imagine", "tiny-flux", "a red square", "--steps", "2", "--size", "48x32", "--seed", "3",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (48, 32)
    again = tmp_path / "again.png"
    run("imagine", "tiny-flux", "a red square", "--steps", "2", "--size", "48x32", "--seed", "3", "--out", again)
    assert out.read_bytes() == again.read_bytes()


def test_imagine_from_an_image_and_with_loras(run, sdxl, tmp_path):
    _import(run, sdxl.folder, "--name", "tiny-sdxl")
    assert run("lora", "add", "tiny-sdxl", sdxl.loras[0], "--name", "a").exit_code == 0
    assert run("lora", "add", "tiny-sdxl", sdxl.loras[1], "--name", "b").exit_code == 0
    source = tmp_path / "in.png"
    Image.new("RGB", (100, 60), (10, 200, 10)).save(source)
    plain, styled, moved = tmp_path / "plain.png", tmp_path / "styled.png", tmp_path / "moved.png"
    base = ("imagine", "tiny-sdxl", "a red square", "--steps", "2", "--seed", "1", "--size", "64x64")
    assert run(*base, "--out", plain).exit_code == 0
    assert run(*base, "--lora", "a=0.9", "--lora", "b=0.6", "--out", styled).exit_code == 0
    result = run(*base, "--image", source, "--strength", "0.6", "--out", moved)
    assert result.exit_code == 0, result.output
    assert plain.read_bytes() != styled.read_bytes() != moved.read_bytes()
    with Image.open(moved) as image:
        assert image.size == (64, 64)


def test_tags_set_at_import_edited_later_and_enforced(run, sdxl, tmp_path):
    model = _import(run, sdxl.folder, "--name", "only-t2i", "--tag", "text-to-image")
    assert model["tags"] == ["text-to-image"]
    source = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(source)
    args = ("imagine", "only-t2i", "a red square", "--steps", "4", "--size", "64x64", "--image", source,
            "--out", tmp_path / "x.png")
    refused = run(*args)
    assert refused.exit_code != 0
    assert refused.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "not tagged for image-to-image" in refused.stderr and "--tag image-to-image" in refused.stderr
    edited = run("edit", "only-t2i", "--tag", "image-to-image", "--untag", "text-to-image", "--json")
    assert json.loads(edited.stdout)["model"]["tags"] == ["image-to-image"]
    assert run(*args).exit_code == 0
    text_only = run("imagine", "only-t2i", "a red square", "--steps", "1", "--out", tmp_path / "y.png")
    assert text_only.exit_code != 0 and "not tagged for text-to-image" in text_only.stderr
    bad = run("edit", "only-t2i", "--tag", "txt2img")
    assert bad.exit_code != 0 and "unknown capability 'txt2img'" in bad.stderr
    absent = run("edit", "only-t2i", "--untag", "video")
    assert absent.exit_code != 0 and "has no tag 'video'" in absent.stderr


def test_cli_errors_are_one_line(run, sdxl, flux, tmp_path):
    p = sdxl.parts
    missing = run("import", p["unet"], "--template", "sd_official", "--vae", p["vae"])
    assert missing.exit_code != 0 and "needs clip-l, clip-g" in missing.stderr
    wrong = run("import", flux.parts["transformer"], "--template", "sd_official", "--vae", p["vae"],
                "--clip-l", p["clip_l"], "--clip-g", p["clip_g"])
    assert wrong.exit_code != 0 and "is a flux model" in wrong.stderr and "--template flux" in wrong.stderr
    _import(run, sdxl.folder, "--name", "tiny")
    bad_size = run("imagine", "tiny", "x", "--size", "63x64", "--out", tmp_path / "z.png")
    assert bad_size.exit_code != 0 and "multiples of 2" in bad_size.stderr
    for result in (missing, wrong, bad_size):
        assert "Traceback" not in result.output and result.stderr.strip().count("\n") == 0
    assert json.loads(run("ls", "--json").stdout)[0]["name"] == "tiny"
