"""`python -m services.inventory`: the inventory_service program."""

from services.base import main
from services.inventory.handler import InventoryService

main("inventory", InventoryService.build)
