"""`python -m services.inventory`: the inventory_service program."""

from services.inventory.handler import InventoryService
from services.order_service import main

main("inventory", InventoryService.build)
