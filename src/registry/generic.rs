//! The generic REST store: create/get/list/update/delete/watch over JSON objects.
