// expect: BeforePool2, AfterPool2, AfterConv3 and AfterConv4 are AlexNet's fusion points
#include <halsal/nets/aliases.hpp>
halsal::SmicNet<halsal::MobileNetV2, halsal::Depth<4>, halsal::BeforePool2> net(10);
