"""Presets: automations from the prompt and plugin templates, and the built-in plugins."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import JSONBody

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.automations.schemas import AutomationOut
from automation_server.presets.schemas import PluginList, PluginPresetCreate, PromptPresetCreate


class PresetController(Controller):
    path = "/preset"
    tags = ["presets"]

    @post("/prompt", status_code=201, sync_to_thread=True)
    def prompt(
        self, data: JSONBody[PromptPresetCreate], services: ServicesDep, caller: CallerDep
    ) -> AutomationOut:
        """Create an automation whose variants each call a model with their own prompt."""
        return services.presets.create_prompt(caller, data)

    @post("/plugin", status_code=201, sync_to_thread=True)
    def plugin(
        self, data: JSONBody[PluginPresetCreate], services: ServicesDep, caller: CallerDep
    ) -> AutomationOut:
        """Create an automation whose variants each run their own list of plugins in order."""
        return services.presets.create_plugin(caller, data)

    @get("/plugins", sync_to_thread=False)
    def plugins(self, services: ServicesDep, caller: CallerDep) -> PluginList:
        """The built-in plugins, each with its config's JSON Schema."""
        return services.presets.plugins()
