"""Script Atelier with gradio_client: python examples/api_client.py [http://127.0.0.1:7860/]"""

import sys

from gradio_client import Client

client = Client(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860/")

# Every parameter is named; the ones left out take the model's defaults (seed -1 = random).
gallery, used, summary = client.predict(
    prompt="a lighthouse on a cliff at dusk, oil painting",
    negative_prompt="blurry",
    model="demo-sd3",  # an id from /models, e.g. "sd3-medium" or "flux1-schnell"
    width=256,
    height=256,
    steps=4,
    guidance=5.0,
    seed=42,
    batch=2,
    api_name="/generate_image",
)
for path, parameters in zip(used["images"], used["parameters"]):
    print(path, "seed", parameters["seed"])

# LoRAs from the library (the app's loras/ folder): "name:weight" entries, separated by commas or new lines.
loras = [lora["name"] for lora in client.predict(model="demo-sd3", api_name="/loras")]
if loras:
    gallery, used, summary = client.predict(
        prompt="a lighthouse on a cliff at dusk, oil painting",
        model="demo-sd3",
        width=256,
        height=256,
        steps=4,
        seed=42,
        loras=f"{loras[0]}:0.8",
        api_name="/generate_image",
    )
    for lora in used["parameters"][0]["loras"]:
        print("LoRA", lora["file"], "weight", lora["weight"], "sha256", lora["sha256"])

for model in client.predict(api_name="/models"):
    print(model["id"], "on disk" if model["on_disk"] else "not on disk", "(demo)" if model["demo"] else "")

status = client.predict(api_name="/status")
print(status["preset"], status["resident_model"], status["process_ram_gb"], "GB RAM")
